import sys

from lab.study.cli import main

sys.exit(main())
