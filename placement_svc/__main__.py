from placement_svc.server import main

main()
