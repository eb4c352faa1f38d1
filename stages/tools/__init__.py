"""The back-ends of one-shot commands: extraction of one video, dataset exports (pix2pix layouts, COCO)."""
