from polyvm.cli import entry

entry()
