"""Looking inside a model: feature maps, Grad-CAM, prediction sheets, one HTML page."""
