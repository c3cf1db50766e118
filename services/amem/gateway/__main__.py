from amem.gateway.app import main

main()
