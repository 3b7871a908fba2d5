from automix.cli import console_main

console_main()
