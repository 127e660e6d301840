"""The ``metaxy`` command (private: its interface is the command line, see ``docs/cli.md``).

- :mod:`.config`: the project configuration, the feature graph and the store it names;
- :mod:`.app`: the Typer commands;
- :mod:`.views`, :mod:`.graph_export`: definitions as tables, trees, Mermaid and images;
- :mod:`.status`, :mod:`.diff`, :mod:`.samples`: what the store holds, what changed, sample ids;
- :mod:`.maintenance`: store upkeep (``vacuum``, ``copy``).
"""
