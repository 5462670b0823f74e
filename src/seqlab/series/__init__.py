"""The LSTM autoencoder for time series: windows -> feature vectors -> reconstructions, with
anomaly scores, thresholds and events (issue 4).

    from seqlab.series import SeriesAutoencoder
    est = SeriesAutoencoder(window=64).fit(train)       # (N,) / (N, C) / DataFrame / (n, T, C)
    scores = est.score_samples(test)                    # (N,) per point, higher = stranger
    events = est.detect_events(test)                    # [(start, end), ...] inclusive
"""

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.io import SeriesData, read_series_csv
from seqlab.series.model import AutoencoderConfig, LSTMAutoencoder

__all__ = ["AutoencoderConfig", "LSTMAutoencoder", "SeriesAutoencoder", "SeriesData",
           "read_series_csv"]
