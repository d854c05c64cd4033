using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>The bounded space between the two sockets of one direction. It is filled only when empty, which
/// keeps one rule for both kinds: a fill that fails with EAGAIN means the source has nothing, never that the
/// buffer is full (a splice into a pipe with free bytes but no free page slot would say EAGAIN too).</summary>
internal abstract class RelayBuffer : IDisposable
{
    /// <summary>Bytes taken from the source and not yet given to the destination.</summary>
    public int Pending { get; protected set; }

    /// <summary>The most one fill asks for.</summary>
    public abstract int Capacity { get; }

    /// <summary>Reads up to <see cref="Capacity"/> bytes from <paramref name="source"/>; the byte count, 0 at end of
    /// stream, or -errno.</summary>
    public abstract int Fill(int source);

    /// <summary>Writes pending bytes to <paramref name="destination"/>; the byte count or -errno.</summary>
    public abstract int Drain(int destination);

    /// <summary>Releases the pipe or the memory; pending bytes are discarded.</summary>
    public abstract void Dispose();

    /// <summary>The buffer a direction starts with. With <see cref="CopyMode.Splice"/> a small one: most connections
    /// of a request-response protocol never fill it, and copying a few kilobytes costs less than the two pipe
    /// descriptors splice needs (pipe2, two fcntl, two close per direction: a fifth of a short connection's system
    /// calls); a direction that fills it goes on through a <see cref="SplicePipe"/> (Direction's bulk buffer).</summary>
    public static RelayBuffer ForNewConnection(NativeBlockPool blocks) => new MemoryBuffer(blocks);

    /// <summary>The size of the memory buffers a proxy in <paramref name="mode"/> copies through.</summary>
    public static int MemoryBufferSize(CopyMode mode) => mode == CopyMode.Splice ? MemoryBuffer.BeforeSplice : MemoryBuffer.Copying;
}

/// <summary>How bytes move from one socket to the other.</summary>
public enum CopyMode
{
    /// <summary>splice(2) into a pipe and out again: the bytes never enter user space (Linux). The first bytes of each
    /// direction are copied through a 16 KiB buffer; a direction that fills it (a bulk stream) opens its pipe then.</summary>
    Splice,
    /// <summary>read(2) into a buffer and write(2) it out (every OS).</summary>
    Buffer,
}

/// <summary>A pipe pair used as a zero-copy buffer.</summary>
internal sealed unsafe class SplicePipe : RelayBuffer
{
    /// <summary>systemd-socket-proxyd's size: 64 KiB pipes (the default) cap a bulk copy at one window per wakeup.</summary>
    public const int PreferredCapacity = 256 * 1024;

    private readonly int _readEnd, _writeEnd;

    public SplicePipe()
    {
        int* fds = stackalloc int[2];
        if (Sockets.pipe2(fds, LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX) != 0)
            throw Errno.Fail("pipe2");
        _readEnd = fds[0];
        _writeEnd = fds[1];
        // Past fs.pipe-user-pages-soft an unprivileged user cannot grow pipes: keep what the kernel gave.
        LibC.fcntl(_writeEnd, Sockets.F_SETPIPE_SZ, PreferredCapacity);
        int size = LibC.fcntl(_writeEnd, Sockets.F_GETPIPE_SZ, 0);
        Capacity = size > 0 ? size : 4096;
    }

    public override int Capacity { get; }

    public override int Fill(int source)
    {
        nint n = Sockets.splice(source, null, _writeEnd, null, (nuint)Capacity, Sockets.SPLICE_F_MOVE | Sockets.SPLICE_F_NONBLOCK);
        if (n < 0)
            return -Errno.Last;
        Pending += (int)n;
        return (int)n;
    }

    public override int Drain(int destination)
    {
        nint n = Sockets.splice(_readEnd, null, destination, null, (nuint)Pending, Sockets.SPLICE_F_MOVE | Sockets.SPLICE_F_NONBLOCK);
        if (n < 0)
            return -Errno.Last;
        Pending -= (int)n;
        return (int)n;
    }

    public override void Dispose()
    {
        LibC.CloseQuietly(_readEnd);
        LibC.CloseQuietly(_writeEnd);
    }
}

/// <summary>A native buffer for read/write copying (native so that no GC pinning is needed per call), taken from
/// and given back to the proxy's <see cref="NativeBlockPool"/>.</summary>
internal sealed unsafe class MemoryBuffer(NativeBlockPool blocks) : RelayBuffer
{
    /// <summary>Buffer mode's size: a bulk stream moves 64 KiB per read/write pair.</summary>
    public const int Copying = 64 * 1024;

    /// <summary>Splice mode's first buffer: above a typical request or response (HTTP headers, a small page), small
    /// enough that a thousand idle connections hold 32 MiB at most.</summary>
    public const int BeforeSplice = 16 * 1024;

    private byte* _memory = blocks.Rent();
    private int _offset;

    public override int Capacity => blocks.BlockSize;

    public override int Fill(int source)
    {
        nint n = LibC.read(source, _memory, (nuint)blocks.BlockSize);
        if (n < 0)
            return -Errno.Last;
        _offset = 0;
        Pending = (int)n;
        return (int)n;
    }

    public override int Drain(int destination)
    {
        nint n = LibC.write(destination, _memory + _offset, (nuint)Pending);
        if (n < 0)
            return -Errno.Last;
        _offset += (int)n;
        Pending -= (int)n;
        return (int)n;
    }

    public override void Dispose()
    {
        if (_memory is not null)
        {
            blocks.Return(_memory); // once: a second Dispose must not hand the same block out twice
            _memory = null;
        }
    }
}

/// <summary>Native memory blocks of one size, kept for reuse on the loop thread (no lock). A proxy that relays a
/// connection per request would otherwise malloc and free two blocks per connection, and glibc would give the top
/// of its heap back (brk) about as often. Keeps at most <paramref name="keep"/> free blocks.</summary>
internal sealed unsafe class NativeBlockPool(int blockSize, int keep) : IDisposable
{
    private readonly Stack<nint> _free = new(keep);
    private bool _disposed;

    public int BlockSize => blockSize;

    public byte* Rent() => _free.TryPop(out nint block) ? (byte*)block : (byte*)NativeMemory.Alloc((nuint)blockSize);

    public void Return(byte* block)
    {
        if (!_disposed && _free.Count < keep)
            _free.Push((nint)block);
        else
            NativeMemory.Free(block);
    }

    /// <summary>Frees the kept blocks; blocks given back later are freed at once.</summary>
    public void Dispose()
    {
        _disposed = true;
        while (_free.TryPop(out nint block))
            NativeMemory.Free((void*)block);
    }
}
