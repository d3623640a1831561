"""Infrastructure shared by every stage: atomic files (fsutil), progress bars, parallel maps, lazy names,
and the command line's argument helpers. Nothing here knows about images, models or runs."""
