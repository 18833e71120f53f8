"""python -m postergenre: the same as the `postergenre` command."""
from postergenre.cli import main

if __name__ == "__main__":
    main()
