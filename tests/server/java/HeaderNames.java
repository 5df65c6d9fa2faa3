// A client that cares how header names are spelled: Java's HttpURLConnection keeps them as
// the server sends them, and the map of getHeaderFields() is case-sensitive. For each call
// it prints the status, then the Content-Type found under that exact name ("null" if none).
//
// Usage: java HeaderNames.java BASE_URL API_KEY   (BASE_URL ends with /v1)
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;

public class HeaderNames {
    static String base;
    static String key;

    static String call(String method, String path, String contentType, byte[] body) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(base + path).openConnection();
        c.setRequestMethod(method);
        c.setRequestProperty("Authorization", "Bearer " + key);
        if (body != null) {
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", contentType);
            try (OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
        }
        int status = c.getResponseCode();
        InputStream in = status < 400 ? c.getInputStream() : c.getErrorStream();
        ByteArrayOutputStream read = new ByteArrayOutputStream();
        if (in != null) {
            in.transferTo(read);
            in.close();
        }
        System.out.println(method + " " + path + " " + status + " " + c.getHeaderFields().get("Content-Type"));
        return read.toString(StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        base = args[0];
        key = args[1];
        String boundary = "java-header-names";
        String form = "--" + boundary + "\r\n"
            + "Content-Disposition: form-data; name=\"purpose\"\r\n\r\nevals\r\n"
            + "--" + boundary + "\r\n"
            + "Content-Disposition: form-data; name=\"file\"; filename=\"j.txt\"\r\n"
            + "Content-Type: text/plain\r\n\r\nhello from java\r\n"
            + "--" + boundary + "--\r\n";
        String made = call("POST", "/files", "multipart/form-data; boundary=" + boundary,
            form.getBytes(StandardCharsets.UTF_8));
        int at = made.indexOf("\"id\":\"") + 6;
        String id = made.substring(at, made.indexOf('"', at));
        call("GET", "/files", null, null);
        call("GET", "/files/" + id, null, null);
        call("GET", "/files/" + id + "/content", null, null);
        call("DELETE", "/files/" + id, null, null);
        call("GET", "/files/" + id, null, null);
    }
}
