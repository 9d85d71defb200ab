from tpfctl.cli import main

main()
