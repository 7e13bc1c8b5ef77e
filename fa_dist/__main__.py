from fa_dist.cli import main

main()
