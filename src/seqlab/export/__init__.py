"""ONNX export and onnxruntime inference (the optional extra `pip install 'seqlab[onnx]'`).

    seqlab translate export RUN          # RUN/onnx/: encoder.onnx, step.onnx, manifest.json
    seqlab translate run RUN --backend onnx "I am cold."
    seqlab series export RUN             # RUN/onnx/: autoencoder.onnx, manifest.json
    seqlab series score RUN data.csv -o scores.csv --backend onnx

The model-specific parts live next to their models (`seqlab.translate.onnx_backend`,
`seqlab.series.onnx_backend`); `seqlab.export.common` holds what they share: the optional-import
check, the atomic export of a directory of graphs, the manifest and the session options.
"""
