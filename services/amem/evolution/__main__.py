from amem.evolution.server import main

main()
