import MigratorCLI

// Everything is in MigratorCLI; `serve` is the binary migrator-serve beside this one.
CommandLineTool.main()
