apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-demo
  labels:
    app.kubernetes.io/name: demo
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
      - name: demo
        image: {{ .Values.image | quote }}
        env:
        - name: MESSAGE
          value: {{ .Values.message | quote }}
