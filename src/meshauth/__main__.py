from meshauth.cli import main

main()
