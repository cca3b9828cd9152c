"""Drive an endpoint with the KServe Python SDK (``InferenceRESTClient``, protocol v2), with its
defaults; run by tests/serving/test_clients.py in a subprocess whose ``PYTHONPATH`` holds the SDK
(tests/peer_env.py). Prints one JSON object: each call's answer, or the error it raised.

    python kserve_client.py BASE_URL MODEL ROWS.npy
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def outputs(response: Any) -> dict[str, Any]:
    got = {}
    for output in response.outputs:
        values = output.as_numpy()
        if output.datatype == "BYTES":
            values = [v.decode() if isinstance(v, bytes) else v for v in values.ravel().tolist()]
        else:
            values = values.tolist()
        got[output.name] = {"datatype": output.datatype, "shape": list(output.shape), "data": values}
    return {"model_name": response.model_name, "id": response.id, "outputs": got}


async def main(base: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    result: dict[str, Any] = {
        "server_ready": await client.is_server_ready(base),
        "server_live": await client.is_server_live(base),
        "model_ready": await client.is_model_ready(base, model),
        "unknown_model_ready": await client.is_model_ready(base, "nope"),
    }
    for datatype, dtype in DATATYPES.items():
        for n in (1, 1000):
            x = rows[:n].astype(dtype)
            tensor = InferInput(name="input", shape=list(x.shape), datatype=datatype)
            tensor.set_data_from_numpy(x)  # the SDK's default: binary
            request = InferRequest(model_name=model, infer_inputs=[tensor], request_id=f"k-{datatype}-{n}")
            response = await client.infer(base, request, model_name=model)
            result[f"binary {datatype} {n}"] = outputs(response)
    x = rows[:3]
    as_json = InferInput(name="input", shape=list(x.shape), datatype="FP64", data=x.ravel().tolist())
    result["json FP64 3"] = outputs(
        await client.infer(base, InferRequest(model_name=model, infer_inputs=[as_json]), model_name=model)
    )
    binary_out = InferRequest(
        model_name=model,
        infer_inputs=[as_json],
        request_outputs=[RequestedOutput("label", parameters={"binary_data": True})],
    )
    result["binary label only"] = outputs(await client.infer(base, binary_out, model_name=model))
    wrong = InferInput(name="input", shape=[1, 3], datatype="FP64", data=[0.0, 1.0, 2.0])
    try:
        await client.infer(base, InferRequest(model_name=model, infer_inputs=[wrong]), model_name=model)
        result["wrong width"] = "no error"
    except Exception as exc:  # the SDK raises httpx.HTTPStatusError with the server's message
        result["wrong width"] = str(exc)
    await client.close()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], np.load(sys.argv[3])))))
