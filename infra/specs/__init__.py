"""The stacks' configuration, read once at program start into typed, validated objects.

Pure (no provider SDK; ``pulumi`` only for its ``Config`` and ``Output`` types): the components
receive these objects and never read configuration themselves.
"""
