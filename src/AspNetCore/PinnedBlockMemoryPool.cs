using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace IoMux.AspNetCore;

/// <summary>
/// 4 KiB blocks carved from arrays on the pinned object heap, reused forever: reads land in them and writev sends
/// from them without pinning anything per call (a block's pointer is fixed), and a connection in steady state
/// allocates nothing (the pipes rent and return blocks). Kestrel's own pool works the same way but is internal.
/// </summary>
internal sealed unsafe class PinnedBlockMemoryPool : MemoryPool<byte>
{
    public const int BlockSize = 4096;
    private const int BlocksPerSlab = 32;
    private readonly ConcurrentQueue<Block> _free = new(); // a queue, not a stack: ConcurrentStack allocates a node per push
    private readonly List<byte[]> _slabs = []; // kept alive: the blocks point into them
    private readonly object _gate = new();

    public override int MaxBufferSize => BlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (_free.TryDequeue(out var block))
            return block.Lease();
        lock (_gate)
        {
            var slab = GC.AllocateUninitializedArray<byte>(BlockSize * BlocksPerSlab, pinned: true);
            _slabs.Add(slab);
            byte* start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(slab));
            for (int i = 1; i < BlocksPerSlab; i++)
                _free.Enqueue(new Block(this, slab, i * BlockSize, start + i * BlockSize));
            return new Block(this, slab, 0, start).Lease();
        }
    }

    protected override void Dispose(bool disposing)
    {
    }

    /// <summary>One block: its own memory manager, so <see cref="Memory{T}.Pin"/> costs nothing and the send path
    /// can find the pointer.</summary>
    internal sealed class Block(PinnedBlockMemoryPool pool, byte[] slab, int offset, byte* pointer) : MemoryManager<byte>
    {
        private int _leased;

        public byte* Pointer { get; } = pointer;

        public Block Lease()
        {
            _leased = 1;
            return this;
        }

        public override Span<byte> GetSpan() => slab.AsSpan(offset, BlockSize);

        public override Memory<byte> Memory => CreateMemory(BlockSize);

        public override MemoryHandle Pin(int elementIndex = 0) => new(Pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
            // The pipe returns the block when its segment is consumed; a double return must not put it twice.
            if (Interlocked.Exchange(ref _leased, 0) == 1)
                pool._free.Enqueue(this);
        }
    }
}
