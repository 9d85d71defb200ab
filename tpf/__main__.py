from tpf.cli import main

main()
