using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.Kqueue;

/// <summary>
/// The real kqueue: libc's on the BSDs and macOS, or libkqueue (a user-space kqueue for Linux) when the
/// environment variable <c>IOMUX_KQUEUE_LIBRARY</c> names its shared object. libkqueue uses the 32-byte
/// struct and FreeBSD's filter numbers. With the variable unset nothing here is loaded on Linux.
/// </summary>
internal sealed unsafe partial class NativeKqueue : IKqueueSystem
{
    public const string LibraryVariable = "IOMUX_KQUEUE_LIBRARY";

    [LibraryImport("libc", SetLastError = true)] private static partial int kqueue();
    [LibraryImport("libc", SetLastError = true)] private static partial int kevent(int kq, byte* changes, int changeCount, byte* events, int eventCount, Timespec* timeout);

    // NetBSD's header renames kevent to __kevent50 (sys/event.h rev 1.54: __RENAME(__kevent50)); the plain
    // symbol is a compat wrapper taking a timespec with a 32-bit tv_sec (lib/libc/compat/sys/compat_kevent.c).
    [LibraryImport("libc", EntryPoint = "__kevent50", SetLastError = true)] private static partial int kevent50(int kq, byte* changes, nuint changeCount, byte* events, nuint eventCount, Timespec* timeout);

    private readonly KeventLayout _layout;
    private readonly delegate* unmanaged<int> _libKqueue;
    private readonly delegate* unmanaged<int, byte*, int, byte*, int, Timespec*, int> _libKevent;

    private NativeKqueue(KqueueProfile platform, nint library)
    {
        _layout = platform.Layout;
        Profile = platform;
        if (library != 0)
        {
            _libKqueue = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "kqueue");
            _libKevent = (delegate* unmanaged<int, byte*, int, byte*, int, Timespec*, int>)NativeLibrary.GetExport(library, "kevent");
        }
    }

    /// <summary>The OS's kqueue, or libkqueue when <c>IOMUX_KQUEUE_LIBRARY</c> is set; null where neither exists.</summary>
    public static NativeKqueue? ForThisSystem()
    {
        switch (IoMux.Interop.Platform.Flavor)
        {
            case UnixFlavor.FreeBSD:
                return new NativeKqueue(Environment.OSVersion.Version.Major >= 15 ? KqueueProfile.FreeBsd15 : KqueueProfile.FreeBsd14, 0);
            case UnixFlavor.MacOS:
                return new NativeKqueue(KqueueProfile.MacOS, 0);
            case UnixFlavor.NetBSD:
                return new NativeKqueue(KqueueProfile.NetBsd, 0);
            case UnixFlavor.OpenBSD:
                return new NativeKqueue(KqueueProfile.OpenBsd, 0); // EVFILT_USER is probed: 7.7 and older fall back to a pipe
            case UnixFlavor.DragonFly:
                return new NativeKqueue(KqueueProfile.DragonFly, 0);
        }
        if (Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } path && !IoMux.Interop.Platform.IsSetuid)
            return new NativeKqueue(KqueueProfile.LibKqueue, NativeLibrary.Load(path));
        return null;
    }

    public KqueueProfile Profile { get; }

    public OsCalls Os => OsCalls.Native;

    public KeventLayout Layout => _layout;

    public int Create()
    {
        int kq;
        if (_libKqueue != null)
        {
            Marshal.SetLastSystemError(0);
            kq = _libKqueue();
            return kq >= 0 ? kq : -Marshal.GetLastSystemError(); // function pointers have no SetLastError
        }
        kq = kqueue();
        return kq >= 0 ? kq : -Errno.Last;
    }

    public int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout)
    {
        int size = _layout.Size;
        // Small batches on the stack; the backend's wait buffer is bounded (1 024) so this stays under 64 KiB.
        byte* changeBuffer = stackalloc byte[changes.Length * size];
        byte* eventBuffer = stackalloc byte[events.Length * size];
        for (int i = 0; i < changes.Length; i++)
            _layout.Write(changeBuffer + i * size, changes[i]);
        Timespec ts = default;
        Timespec* tp = null;
        if (timeout is { } t)
        {
            ts = Timespec.From(t);
            tp = &ts;
        }
        int n;
        if (_libKevent != null)
        {
            Marshal.SetLastSystemError(0);
            n = _libKevent(kq, changeBuffer, changes.Length, eventBuffer, events.Length, tp);
            if (n < 0)
                return -Marshal.GetLastSystemError();
        }
        else
        {
            n = Profile.PositiveFilters // NetBSD
                ? kevent50(kq, changeBuffer, (nuint)changes.Length, eventBuffer, (nuint)events.Length, tp)
                : kevent(kq, changeBuffer, changes.Length, eventBuffer, events.Length, tp);
            if (n < 0)
                return -Errno.Last;
        }
        for (int i = 0; i < n; i++)
            events[i] = _layout.Read(eventBuffer + i * size);
        return n;
    }

    public void Close(int kq) => LibC.CloseQuietly(kq);
}
