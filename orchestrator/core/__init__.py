"""The shared core: the artifact format, the storage layer, the exception tree and the contract.

Everything else (training, the endpoint, publishing, the control plane, ``infra/``) imports it;
it imports nothing of the project outside itself.
"""
