from servepath.cli import main

main()
