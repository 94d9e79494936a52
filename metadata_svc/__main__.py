from metadata_svc.server import main

main()
