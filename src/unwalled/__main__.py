from unwalled.cli import main

main()
