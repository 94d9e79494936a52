from webhook_svc.server import main

main()
