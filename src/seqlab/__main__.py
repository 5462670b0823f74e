"""`python -m seqlab ...`: the same command line as the `seqlab` script."""

from seqlab.cli import main

if __name__ == "__main__":
    main(prog_name="seqlab")
