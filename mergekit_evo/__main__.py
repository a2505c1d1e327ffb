from mergekit_evo.cli import main

main()
