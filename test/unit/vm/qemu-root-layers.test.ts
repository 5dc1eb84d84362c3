import { describe, expect, it } from 'vitest';
import { diskArgs, layerFds, rootDiskArgs } from '../../../src/vm/qemu-args.js';

describe('root layers (qcow2 over root.img, every file an fd)', () => {
  it('no layers: the raw root in snapshot mode, exactly as before', () => {
    expect(rootDiskArgs({})).toEqual(['-drive', 'file=/dev/fdset/1,format=raw,if=virtio,snapshot=on,werror=report,rerror=report']);
    expect(rootDiskArgs({ rootLayers: [] })).toEqual(rootDiskArgs({}));
    expect(() => rootDiskArgs({ rootWritable: true })).toThrow(/needs a root layer/);
  });

  it('one derived layer, booted in snapshot mode', () => {
    expect(layerFds({ rootLayers: ['/c/layer.qcow2'] })).toEqual({ ro: [6], rw: null });
    expect(rootDiskArgs({ rootLayers: ['/c/layer.qcow2'] })).toMatchInlineSnapshot(`
      [
        "-add-fd",
        "fd=6,set=3,opaque=layer1-ro",
        "-blockdev",
        "driver=file,node-name=root0-file,filename=/dev/fdset/1,read-only=on",
        "-blockdev",
        "driver=raw,node-name=root0,file=root0-file,read-only=on",
        "-drive",
        "file=/dev/fdset/3,format=qcow2,backing=root0,if=virtio,snapshot=on,werror=report,rerror=report",
      ]
    `);
  });

  it('two layers, the top one written (building a layer over a layer)', () => {
    expect(layerFds({ rootLayers: ['/a', '/b'], rootWritable: true })).toEqual({ ro: [6, 7], rw: 8 });
    expect(rootDiskArgs({ rootLayers: ['/a', '/b'], rootWritable: true })).toMatchInlineSnapshot(`
      [
        "-add-fd",
        "fd=6,set=3,opaque=layer1-ro",
        "-add-fd",
        "fd=7,set=4,opaque=layer2-ro",
        "-add-fd",
        "fd=8,set=4,opaque=layer2-rw",
        "-blockdev",
        "driver=file,node-name=root0-file,filename=/dev/fdset/1,read-only=on",
        "-blockdev",
        "driver=raw,node-name=root0,file=root0-file,read-only=on",
        "-blockdev",
        "driver=file,node-name=root1-file,filename=/dev/fdset/3,read-only=on",
        "-blockdev",
        "driver=qcow2,node-name=root1,file=root1-file,backing=root0,read-only=on",
        "-drive",
        "file=/dev/fdset/4,format=qcow2,backing=root1,if=virtio,werror=report,rerror=report",
      ]
    `);
  });

  it('no path of a layer ever reaches the argv', () => {
    const argv = diskArgs({ rootLayers: ['/secret/base-layer.qcow2', '/secret/top.qcow2'] });
    expect(argv.join(' ')).not.toMatch(/secret/);
    // the root drive stays before the job drive: the guest's vda is the root
    const drives = argv.filter((a) => a.startsWith('file=/dev/fdset/'));
    expect(drives.map((d) => d.split(',')[0])).toEqual(['file=/dev/fdset/4', 'file=/dev/fdset/2']);
  });
});
