from cmsd_cli.app import main

main()
