from ilscaling.cli import main

main()
