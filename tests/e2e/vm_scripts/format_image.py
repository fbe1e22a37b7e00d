# Format every partition of a blank sim flash image (factory step).
import sys
from board.sim import flash

img = flash.ImageFile(sys.argv[1])
for name, _, _ in img.parts:
    flash.mkfs(img.partition(name))
print("FORMATTED", len(img.parts))
