namespace IoMux;

/// <summary>A system call failed. <see cref="ErrorName"/> is the errno's symbolic name (EBADF, EMFILE ...).</summary>
public class PosixException : IOException
{
    /// <summary>Creates the exception for <paramref name="errno"/> raised by <paramref name="operation"/>.</summary>
    public PosixException(string operation, int errno, string? detail = null)
        : base(Format(operation, errno, detail))
    {
        Operation = operation;
        Errno = errno;
        HResult = errno;
    }

    /// <summary>The platform's errno value.</summary>
    public int Errno { get; }

    /// <summary>The errno's symbolic name, e.g. "EBADF".</summary>
    public string ErrorName => IoMux.Errno.Name(Errno);

    /// <summary>The call that failed, e.g. "epoll_ctl(ADD)".</summary>
    public string Operation { get; }

    private static string Format(string operation, int errno, string? detail) =>
        $"{operation} failed: {IoMux.Errno.Name(errno)} ({IoMux.Errno.Describe(errno)})" + (detail is null ? "" : $"; {detail}");
}

/// <summary>The descriptor is already registered with this poller.</summary>
public sealed class AlreadyRegisteredException(int fd)
    : InvalidOperationException($"Descriptor {fd} is already registered with this poller; modify the existing registration or deregister it first.")
{
    /// <summary>The descriptor.</summary>
    public int Descriptor { get; } = fd;
}

/// <summary>The descriptor is not registered with this poller.</summary>
public sealed class NotRegisteredException(int fd)
    : InvalidOperationException($"Descriptor {fd} is not registered with this poller.")
{
    /// <summary>The descriptor.</summary>
    public int Descriptor { get; } = fd;
}

/// <summary>The descriptor can never block (a regular file or a directory), so waiting on it means nothing.
/// Every backend refuses it the same way (epoll says EPERM; poll and select would call it always ready).</summary>
public sealed class UnsupportedDescriptorException(int fd, string kind)
    : NotSupportedException($"Descriptor {fd} is a {kind}, which is always ready and cannot be waited on; read it directly or off the loop.")
{
    /// <summary>The descriptor.</summary>
    public int Descriptor { get; } = fd;
}

/// <summary>A <see cref="System.Net.Sockets.Socket"/> (or its <see cref="System.Net.Sockets.SafeSocketHandle"/>) was
/// registered while in blocking mode. A readiness report is a hint, not a promise (another reader may drain the
/// data first; a datagram may be dropped for a bad checksum), so a read or write on a blocking socket after one
/// can block the whole loop. Set <c>Socket.Blocking = false</c> before registering it.</summary>
public sealed class BlockingSocketException(int fd)
    : InvalidOperationException($"Socket fd {fd} is in blocking mode (O_NONBLOCK is not set); set Socket.Blocking = false before registering it, or a read or write after a readiness report could block the loop.")
{
    /// <summary>The descriptor.</summary>
    public int Descriptor { get; } = fd;
}

/// <summary>The descriptor number is above what the backend can represent (select's FD_SETSIZE).</summary>
public sealed class DescriptorOutOfRangeException(int fd, int max, string backend)
    : ArgumentOutOfRangeException(nameof(fd), fd, $"Descriptor {fd} is above {max}, the highest the {backend} backend can watch; use another backend.")
{
    /// <summary>The highest accepted descriptor.</summary>
    public int MaxDescriptor { get; } = max;
}

/// <summary>No backend could be used: the forced one is unknown or unavailable, or none initialised.</summary>
public sealed class BackendUnavailableException(string message, Exception? inner = null)
    : InvalidOperationException(message, inner);
