from search_svc.server import main

main()
