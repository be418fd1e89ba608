from tokenlife.cli import main

main()
