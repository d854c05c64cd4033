using System.Runtime.InteropServices;
using System.Text;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>inotify(7) event bits (Linux's values), for <see cref="EventLoop.AddInotify"/> and <see cref="InotifyEvent.Mask"/>.</summary>
[Flags]
#pragma warning disable CA1711 // "Flags": the kernel's own name for these bits
public enum InotifyMask : uint
#pragma warning restore CA1711
{
    /// <summary>No bit.</summary>
    None = 0,
    /// <summary>IN_ACCESS: a file was read.</summary>
    Access = 0x1,
    /// <summary>IN_MODIFY: a file was written.</summary>
    Modify = 0x2,
    /// <summary>IN_ATTRIB: metadata changed.</summary>
    Attrib = 0x4,
    /// <summary>IN_CLOSE_WRITE: a file opened for writing was closed.</summary>
    CloseWrite = 0x8,
    /// <summary>IN_CLOSE_NOWRITE: a file not opened for writing was closed.</summary>
    CloseNoWrite = 0x10,
    /// <summary>IN_OPEN: a file was opened.</summary>
    Open = 0x20,
    /// <summary>IN_MOVED_FROM: a file was moved out of the watched directory.</summary>
    MovedFrom = 0x40,
    /// <summary>IN_MOVED_TO: a file was moved into the watched directory.</summary>
    MovedTo = 0x80,
    /// <summary>IN_CREATE: a file was created in the watched directory.</summary>
    Create = 0x100,
    /// <summary>IN_DELETE: a file was deleted from the watched directory.</summary>
    Delete = 0x200,
    /// <summary>IN_DELETE_SELF: the watched file or directory itself was deleted.</summary>
    DeleteSelf = 0x400,
    /// <summary>IN_MOVE_SELF: the watched file or directory itself was moved.</summary>
    MoveSelf = 0x800,
    /// <summary>IN_UNMOUNT (reported only): the file system was unmounted.</summary>
    Unmount = 0x2000,
    /// <summary>IN_Q_OVERFLOW (reported only): the kernel's event queue overflowed; events were lost.</summary>
    QueueOverflow = 0x4000,
    /// <summary>IN_IGNORED (reported only): the watch was removed (the file is gone); nothing more will come.</summary>
    Ignored = 0x8000,
    /// <summary>IN_ONLYDIR: watch the path only if it is a directory.</summary>
    OnlyDirectory = 0x0100_0000,
    /// <summary>IN_DONT_FOLLOW: do not follow a final symbolic link.</summary>
    DontFollow = 0x0200_0000,
    /// <summary>IN_EXCL_UNLINK: no events for children once they are unlinked.</summary>
    ExcludeUnlinked = 0x0400_0000,
    /// <summary>IN_ISDIR (reported only): the event's subject is a directory.</summary>
    IsDirectory = 0x4000_0000,
    /// <summary>IN_ONESHOT: one event, then the watch is removed.</summary>
    Oneshot = 0x8000_0000,
}

/// <summary>One inotify event: what happened (<see cref="Mask"/>), the cookie that pairs a move's two halves, and
/// for an event in a watched directory the name of the file inside it (null for the watched path itself).</summary>
public readonly struct InotifyEvent
{
    internal InotifyEvent(InotifyMask mask, uint cookie, string? name)
    {
        Mask = mask;
        Cookie = cookie;
        Name = name;
    }

    /// <summary>What happened, with <see cref="InotifyMask.IsDirectory"/> when it happened to a directory.</summary>
    public InotifyMask Mask { get; }

    /// <summary>Pairs <see cref="InotifyMask.MovedFrom"/> with its <see cref="InotifyMask.MovedTo"/>; 0 otherwise.</summary>
    public uint Cookie { get; }

    /// <summary>The file's name inside the watched directory; null when the event is about the watched path itself.</summary>
    public string? Name { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Mask} {Name}";
}

/// <summary>
/// Changes to a file or directory, delivered on the loop thread (sd_event_add_inotify): each event of the kernel's
/// queue is one callback, with its mask, cookie and name. The source has its own inotify instance with one watch, a
/// descriptor the poller watches like any other (sd-event shares one instance per priority among its sources: fewer
/// descriptors, the same events). After <see cref="InotifyMask.Ignored"/> (the watched file is gone, or a oneshot
/// watch fired) nothing more comes; dispose the source. Linux only.
/// </summary>
public sealed unsafe partial class InotifySource : EventSource
{

    [LibraryImport("libc", SetLastError = true)] private static partial int inotify_init1(int flags);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int inotify_add_watch(int fd, string path, uint mask);

    private readonly Action<InotifySource, InotifyEvent> _callback;
    private readonly OwnedDescriptor _descriptor;
    // One read takes what is queued, up to this much: enough for 256 events with short names, so a burst of creations
    // costs few reads; an event with a 255-byte name (the longest) still fits.
    private readonly byte[] _buffer = new byte[16 * 1024];

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.WhenReported;

    internal InotifySource(EventLoop loop, string path, InotifyMask mask, Action<InotifySource, InotifyEvent> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description ?? $"inotify {path}")
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("inotify exists on Linux only.");
        ArgumentNullException.ThrowIfNull(path);
        Path = path;
        Mask = mask;
        _callback = callback;
        int fd = inotify_init1(LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX) /* IN_NONBLOCK | IN_CLOEXEC */;
        if (fd < 0)
            throw new PosixException("inotify_init1", Errno.Last);
        if (inotify_add_watch(fd, path, (uint)mask) < 0)
        {
            int errno = Errno.Last;
            LibC.CloseQuietly(fd);
            throw new PosixException("inotify_add_watch", errno, path);
        }
        _descriptor = new OwnedDescriptor(this, fd, Interest.Readable);
    }

    /// <summary>The watched path, as given.</summary>
    public string Path { get; }

    /// <summary>The events asked for.</summary>
    public InotifyMask Mask { get; }

    /// <summary>The inotify descriptor (owned by the source).</summary>
    public int Descriptor => _descriptor.Fd;

    private protected override void OnStateChanged(SourceState previous, SourceState current) => _descriptor.Sync();

    private protected override void OnRateLimitChanged(bool limited) => _descriptor.Sync();

    /// <summary>One read of the queue; every event in it is one callback, until the source is disposed. Events still
    /// queued in the kernel keep the descriptor readable for the next iteration.</summary>
    internal override void Dispatch()
    {
        int length;
        fixed (byte* buffer = _buffer)
            length = (int)LibC.read(_descriptor.Fd, buffer, (nuint)_buffer.Length);
        if (length <= 0)
            return; // EAGAIN: a wake with nothing queued
        for (int offset = 0; offset + 16 <= length && !IsDisposed;)
        {
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; } (name NUL-padded)
            uint mask = BitConverter.ToUInt32(_buffer, offset + 4);
            uint cookie = BitConverter.ToUInt32(_buffer, offset + 8);
            int nameLength = (int)BitConverter.ToUInt32(_buffer, offset + 12);
            string? name = null;
            if (nameLength > 0)
            {
                var bytes = new ReadOnlySpan<byte>(_buffer, offset + 16, nameLength);
                int end = bytes.IndexOf((byte)0);
                name = Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
            }
            offset += 16 + nameLength;
            _callback(this, new InotifyEvent((InotifyMask)mask, cookie, name));
        }
    }

    private protected override void OnDispose() => _descriptor.Close();
}

public sealed partial class EventLoop
{
    /// <summary>Watches <paramref name="path"/> with inotify for the events in <paramref name="mask"/>
    /// (sd_event_add_inotify); see <see cref="InotifySource"/>.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="PosixException">inotify refused the path (ENOENT, ENOTDIR with <see cref="InotifyMask.OnlyDirectory"/>, ENOSPC past the watch limit...).</exception>
    public InotifySource AddInotify(string path, InotifyMask mask, Action<InotifySource, InotifyEvent> callback, int priority = 0,
        SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(callback);
        return Attach(new InotifySource(this, path, mask, callback, priority, state, description));
    }
}
