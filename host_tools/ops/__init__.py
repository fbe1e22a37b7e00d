"""Operator side of signed commands: operator keys and roles (`ops keys`), the
command policy published as a TUF target per model, signing and sending
commands (`command send/list`). The device side is agent/security/commands*.py."""
