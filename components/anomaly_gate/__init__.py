"""AnomalyGate: stops the pipeline before training when ExampleValidator found anomalies."""
