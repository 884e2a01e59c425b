# issue 12 scratch (diagnostic only): the cyclic collector off in the served process
import gc

gc.disable()
