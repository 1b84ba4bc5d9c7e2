from litefs.cli import main

main()
