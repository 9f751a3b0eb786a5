from smship.cli import main

main()
