from lrnn.cli import main

main()
