from upload_svc.server import main

main()
