from croft.cli import main

main()
