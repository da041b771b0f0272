"""The example model on LitServe, with its dynamic batching on.

Requests are the plain applicant JSON (the same body servepath takes) on ``POST /predict``;
LitServe gathers up to 64 of them for at most 5 ms, and the model answers them in one
``predict_proba`` call on a DataFrame. One inference worker, on the CPU.

    python litserve_server.py --model model.joblib --port 8094 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import litserve as ls
import numpy as np
import pandas as pd

MAX_BATCH_SIZE = 64
BATCH_TIMEOUT_S = 0.005


class LoanDecisionAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, model_path: str) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.model = joblib.load(self.model_path)

    # LitServe reads this parameter's annotation to build the endpoint; left bare, the body is
    # the parsed JSON object.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def batch(self, inputs: list[dict[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame(inputs)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(frame))

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, proba: np.ndarray) -> dict[str, Any]:
        best = int(proba.argmax())
        return {
            "decision": str(self.model.classes_[best]),
            "probability": round(float(proba[best]), 6),
            "model_version": "litserve",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8094)
    args = parser.parse_args()
    server = ls.LitServer(LoanDecisionAPI(args.model), accelerator="cpu", workers_per_device=1)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
