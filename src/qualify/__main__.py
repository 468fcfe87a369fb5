from qualify.cli.main import main

main()
