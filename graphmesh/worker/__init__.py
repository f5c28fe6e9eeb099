"""The worker side of the library: consuming run jobs, adopting runs of versions no live
worker serves, and announcing this worker in the roster."""
