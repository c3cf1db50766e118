from amem.embedding.server import main

main()
