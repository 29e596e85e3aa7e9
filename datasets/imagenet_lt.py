"""ImageNet-LT (Liu et al. 2019, OLTR; lists from facebookresearch/classifier-balancing).

``ImageNet_LT_train.txt`` (115,846 images, 1,280 down to 5 per class), ``_val.txt`` (20 per
class, drawn from ImageNet train) and ``_test.txt`` (50 per class = the ImageNet validation set,
sorted into class folders ``val/<wnid>/``) list ``<relpath> <label>``; the label is the index of
the wnid in the sorted list of the 1,000 wnids. Images stay on disk (``ImageFiles``) and are
streamed by ``benchmark.streaming`` (GPU decoding or the pre-decoded cache, ``bench cache``).
Training: TDE's recipe (protocol ``imagenet-lt``): RandomResizedCrop(224) + flip +
ColorJitter(0.4, 0.4, 0.4), test Resize(256) + CenterCrop(224), ImageNet mean/std.
"""

from benchmark import register_dataset
from benchmark.readers import SplitFileDataset


@register_dataset("imagenet-lt")
class ImageNetLT(SplitFileDataset):
    """1,000 ImageNet classes cut long-tailed (Pareto α=6), 20/class val, 50/class test."""

    version = "1"
    prefix = "ImageNet_LT"
    txt_folders = ("ImageNet_LT", "imagenet_lt", "ImageNet-LT", "data/ImageNet_LT")
    image_folders = ("imagenet", "ImageNet", "ILSVRC2012", "ILSVRC/Data/CLS-LOC")
    layout = """ImageNet_LT_{train,val,test}.txt in DIR, DIR/ImageNet_LT/ or DIR/imagenet/,
        and the ImageNet images they list (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG with the
        validation set in class folders) beside the txt files, in DIR, or in DIR/imagenet/"""
