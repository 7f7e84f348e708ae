import sys

from dicomml.cli import main

sys.exit(main())
