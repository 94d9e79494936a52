from transcoder_svc.worker import main

main()
