"""Places-LT (Liu et al. 2019, OLTR; lists from facebookresearch/classifier-balancing).

``Places_LT_train.txt`` (62,500 images of 365 classes, 4,980 down to 5), ``_val.txt`` (20 per
class from Places365 train) and ``_test.txt`` (100 per class from Places365 val) list
``<relpath> <label>`` relative to the Places365-Standard "easyformat" folder
(``train/<class>/*.jpg``, ``val/<class>/*.jpg``). Images stay on disk and are streamed.
Protocol ``imagenet-lt`` from scratch (the papers usually fine-tune an ImageNet-pretrained
ResNet-152, which the harness does not download).
"""

from benchmark import register_dataset
from benchmark.readers import SplitFileDataset


@register_dataset("places-lt")
class PlacesLT(SplitFileDataset):
    """365 Places365 scene classes cut long-tailed, 20/class val, 100/class test."""

    version = "1"
    prefix = "Places_LT"
    txt_folders = ("Places_LT", "places_lt", "Places-LT", "data/Places_LT")
    image_folders = ("places365_standard", "Places365", "places365")
    layout = """Places_LT_{train,val,test}.txt in DIR, DIR/Places_LT/ or
        DIR/places365_standard/, and the Places365 images they list (train/<class>/*.jpg,
        val/<class>/*.jpg) beside the txt files, in DIR, or in DIR/places365_standard/"""
